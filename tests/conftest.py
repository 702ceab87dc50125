pytest_plugins = ["pynet.testing.plugin"]
