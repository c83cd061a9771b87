from messages_app.sending.tests.conftest import provider  # noqa: F401  (the scripted provider over real HTTP)
