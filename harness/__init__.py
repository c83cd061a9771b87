"""Starting, waiting for and stopping the processes that tests, the benchmark and `make run` need.

`harness.waiting` polls a condition until a deadline (standard library only); `harness.processes`
runs a command in its own process group with its output in a log file.
"""
