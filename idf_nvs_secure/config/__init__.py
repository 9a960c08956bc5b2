"""The firmware's configuration: sdkconfig with Kconfig semantics, the shipped Kconfig
model, and chip facts."""
