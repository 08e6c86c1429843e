from codeclm.cli import main

raise SystemExit(main())
