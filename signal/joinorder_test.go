package signal_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestJoinAnswerBeforeNotifications: while others join the room at the same moment, a joining
// client gets its join answer before any notification. A participantJoined that overtook the
// answer was lost by clients, whose view the answer replaces (seen: a browser that decoded its
// peer's video but never listed it).
func TestJoinAnswerBeforeNotifications(t *testing.T) {
	e := newEnv(t, 1, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	join := func(identity string) string {
		return fmt.Sprintf(`{"id":1,"method":"join","data":{"token":%q}}`, e.token("r", identity, false, true))
	}
	for round := range 30 {
		me := e.raw()
		others := make([]*rawConn, 6)
		frames := make([]string, len(others))
		for i := range others {
			others[i], frames[i] = e.raw(), join(fmt.Sprintf("other-%d-%d", round, i))
		}
		var wg sync.WaitGroup
		for i, o := range others {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = o.c.Write(ctx, websocket.MessageText, []byte(frames[i]))
			}()
		}
		me.send(join(fmt.Sprintf("me-%d", round)))
		_, b, err := me.c.Read(ctx)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"ok":true`) {
			t.Fatalf("round %d: the first frame after join is not its answer: %s", round, b)
		}
	}
}
