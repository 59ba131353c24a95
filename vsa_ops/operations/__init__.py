"""pyinfra operations that apply a plan: small generators, one module per concept. Each yields
commands only for what the plan says differs, so an operation "changes" exactly when it yields."""
