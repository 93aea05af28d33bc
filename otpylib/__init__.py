"""otpylib: Erlang/OTP-style processes for Python on asyncio."""
