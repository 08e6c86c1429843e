from codeclm.cli import console

raise SystemExit(console())
