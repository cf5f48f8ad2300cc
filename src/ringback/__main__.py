from ringback.cli import main

raise SystemExit(main())
