"""otpylib_dist: distribution for otpylib."""
