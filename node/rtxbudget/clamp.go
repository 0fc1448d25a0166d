package rtxbudget

// Clamp caps the bucket at max bytes (never below Burst, so a lone loss can always be
// repaired): the sender's other limit, such as the room left under the receiver's bandwidth
// estimate, for retransmissions from now until the next Begin. A negative max clamps nothing.
func (b *Budget) Clamp(max float64) {
	if max < 0 {
		return
	}
	if max < Burst {
		max = Burst
	}
	if b.tokens > max {
		b.tokens = max
	}
}
