"""A fake of the probe provider, a real HTTP server that tests, benchmarks and local runs start.

Run it with ``python -m fake_provider --port 8070 --token TOKEN``; drive it from Python with
``fake_provider.client``. It does not import Django.
"""
