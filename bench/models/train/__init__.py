"""The harness's trainers: bi-encoders and twin towers (towers), cross-encoders (cross), and their typed options
(options), which a config checks when it is parsed."""
