package client

import "time"

// SetPingInterval shortens a client's ping interval (and so its deadline, three intervals)
// for the tests.
func SetPingInterval(o *Options, d time.Duration) { o.pingInterval = d }

// Backoff is the wait before resume attempt n.
func Backoff(n int) time.Duration { return backoff(n) }
