from latentrm.cli import main

raise SystemExit(main())
