"""`python -m mock_llm`."""

from __future__ import annotations

from mock_llm.cli import main

raise SystemExit(main())
