"""prometheus_client's multiprocess mode: the files workers write, the archive exited workers
are folded into, and the scrape that reads both."""
