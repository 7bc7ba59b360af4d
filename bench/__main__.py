import sys

try:
    from bench.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: nothing was started, nothing to save
    print("\ninterrupted while starting; nothing was measured", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
