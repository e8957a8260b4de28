"""``python -m uservlm_ros.tools.bench``: the bench's command line (and its netns session)."""

from uservlm_ros.tools.bench.run import main

raise SystemExit(main())
