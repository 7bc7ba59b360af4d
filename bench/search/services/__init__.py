"""Servers a backend talks to over a socket, started and stopped by the harness (one module per engine): a private
folder, a unix socket only the harness can open, a password generated per run, a clear error naming the engine when
the server dies, nothing left running at the end. May import bench.core."""
