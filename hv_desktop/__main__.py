from hv_desktop.cli import main

raise SystemExit(main())
