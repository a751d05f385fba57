# Local vLLM deployments get their tables with the backends issue; nothing is stored here yet.
