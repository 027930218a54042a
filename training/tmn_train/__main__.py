from tmn_train.cli import main

raise SystemExit(main())
