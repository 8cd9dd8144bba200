"""Live: the diff of two snapshots into lifecycle events, the Monitor that polls, and the inotify source."""
