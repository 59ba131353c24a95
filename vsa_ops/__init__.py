"""vsa-ops: the VSA hub as code."""
