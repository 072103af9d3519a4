from surgebench.cli import main

raise SystemExit(main())
