"""The typed client (layer F): handles per job type behind `JobsClient`."""
