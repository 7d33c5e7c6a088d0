from slmkit.cli.main import main

raise SystemExit(main())
