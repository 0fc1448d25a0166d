package harness

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// NeedRoot skips the test with a loud reason when the machine cannot run a lab: not root, or no
// usable `ip netns`, nft, tc or /dev/net/tun. Under CI=true it fails the test instead, so a green
// CI run means the lab tests really ran. [New] calls it; call it yourself only before work that
// should not start without a lab.
func NeedRoot(t testing.TB) {
	t.Helper()
	reason := labUnusable()
	if reason == "" {
		return
	}
	msg := "NO LAB: " + reason + "; run the test as root on Linux with iproute2 and nftables " +
		"(`apt-get install -y iproute2 nftables`)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true makes this a failure)")
	}
	t.Skip("SKIPPED: " + msg)
}

// labUnusable returns why no lab can run here, or "" when one can.
func labUnusable() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("not root (euid %d)", os.Geteuid())
	}
	for _, tool := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("%s not found: %v", tool, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Sprintf("`ip netns list` failed: %v: %s", err, out)
	}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("/dev/net/tun unusable: %v", err)
	}
	f.Close()
	return ""
}
