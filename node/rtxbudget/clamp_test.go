package rtxbudget

import "testing"

// TestClamp: a clamp below the bucket's tokens leaves max tokens (at least Burst, so one packet
// can still be resent), a clamp above or a negative one changes nothing, and a clamped bucket
// refuses what exceeds it.
func TestClamp(t *testing.T) {
	b := New(Config{}, t0, 0)
	b.Begin(t0, 100_000) // 1500 + 25 % of 100 000
	full := b.Tokens()
	b.Clamp(-1)
	b.Clamp(full + 1)
	if b.Tokens() != full {
		t.Fatalf("tokens %v after clamps above, want %v", b.Tokens(), full)
	}
	b.Clamp(3000)
	if b.Tokens() != 3000 {
		t.Fatalf("tokens %v after Clamp(3000)", b.Tokens())
	}
	b.Clamp(10)
	if b.Tokens() != Burst {
		t.Fatalf("tokens %v after Clamp(10), want Burst %v", b.Tokens(), Burst)
	}
	vs := nack(b, 0, 100_000, 1000, 0, 1, 2)
	if vs[0] != Resend || vs[1] != OverBudget {
		t.Fatalf("verdicts %v, want one resend then over budget", vs)
	}
}
