pytest_plugins = ["matrix.plugin"]
