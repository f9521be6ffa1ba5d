# The two commands of the README.
.PHONY: simulate test

# The autoscaler against the emulated cluster, on the built-in load.
simulate:
	cargo run --release -- simulate

# The whole test suite, after installing what it needs (prometheus, helm-python-sdk).
test:
	.ci/install-test-deps
	cargo test --workspace
