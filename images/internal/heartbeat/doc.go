// Package heartbeat reports, while a long image-build step runs, that it is
// still running; what each report prints is up to its caller.
package heartbeat
