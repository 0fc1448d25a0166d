package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/webrtc/v4"
)

// Two participants join a room: alice publishes a video track and bob, subscribed to every
// producer by default, receives it.
func Example() {
	node, err := startNode() // a node on loopback; in production, the URL of any node
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	tracks := make(chan *webrtc.TrackRemote, 1)
	bob, err := client.Dial(ctx, node.URL, client.Options{
		Token:        node.Token("demo", "bob"),
		LoopbackOnly: true, // both ends on this machine
		OnTrack: func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			select {
			case tracks <- track:
			default:
			}
		},
	})
	if err != nil {
		fmt.Println("bob:", err)
		return
	}
	defer bob.Close()

	alice, err := client.Dial(ctx, node.URL, client.Options{Token: node.Token("demo", "alice"), LoopbackOnly: true})
	if err != nil {
		fmt.Println("alice:", err)
		return
	}
	defer alice.Close()
	fmt.Println(alice.Join.Participant.Identity, "joined room", alice.Join.Room, "with", len(alice.Join.Participants), "participants")

	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "camera", "alice")
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := alice.Publish(ctx, video); err != nil {
		fmt.Println("publish:", err)
		return
	}
	stop := sendVideo(video)
	defer stop()

	select {
	case track := <-tracks:
		// A consumer track's stream id is its publisher's participant id.
		if track.StreamID() == alice.Join.Participant.ID {
			fmt.Println("bob receives alice's", track.Kind())
		}
	case <-ctx.Done():
		fmt.Println("no video:", ctx.Err())
	}
	// Output:
	// alice joined room demo with 2 participants
	// bob receives alice's video
}

// Application messages (chat) reach every participant of the room, the sender included, on
// every node; Decode turns a notification into its proto type.
func Example_messages() {
	node, err := startNode()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	messages := make(chan proto.Message, 1)
	bob, err := client.Dial(ctx, node.URL, client.Options{
		Token: node.Token("chat", "bob"), LoopbackOnly: true,
		OnNotification: func(method string, data json.RawMessage) {
			if m, err := client.Decode(method, data); err == nil {
				if m, ok := m.(proto.Message); ok {
					messages <- m
				}
			}
		},
	})
	if err != nil {
		fmt.Println("bob:", err)
		return
	}
	defer bob.Close()
	alice, err := client.Dial(ctx, node.URL, client.Options{Token: node.Token("chat", "alice"), LoopbackOnly: true})
	if err != nil {
		fmt.Println("alice:", err)
		return
	}
	defer alice.Close()

	if err := alice.SendMessage(ctx, map[string]string{"text": "hello"}); err != nil {
		fmt.Println("send:", err)
		return
	}
	m := <-messages
	var body struct{ Text string }
	_ = json.Unmarshal(m.Data, &body)
	fmt.Printf("%s says %q\n", m.Identity, body.Text)
	// Output: alice says "hello"
}

// A session the node ends for good (replaced by a newer session of the same identity, removed
// or its room deleted through the room API) tells why in Err once Done is closed; the client
// must not reconnect on its own then.
func ExampleClient_Err() {
	node, err := startNode()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := client.Dial(ctx, node.URL, client.Options{Token: node.Token("demo", "alice"), LoopbackOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer first.Close()
	// alice joins again, from another tab say: her first session is replaced.
	second, err := client.Dial(ctx, node.URL, client.Options{Token: node.Token("demo", "alice"), LoopbackOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer second.Close()

	select {
	case <-first.Done():
	case <-ctx.Done():
		fmt.Println("still open")
		return
	}
	var closed *client.CloseError
	if errors.As(first.Err(), &closed) {
		fmt.Println(closed.Code, closed.Reason, "final:", closed.Final())
	}
	// Output: 4001 replaced final: true
}

// The room API's notifications: metadata changes, a moderator's mute, and its request to
// unmute, which the application may accept with a mute request of its own.
func Example_roomAPINotifications() {
	var c *client.Client // set once Dial returns; notifications wait for the join
	ctx := context.Background()
	onNotification := func(method string, data json.RawMessage) {
		n, err := client.Decode(method, data)
		if err != nil {
			return // a notification of a newer node
		}
		switch n := n.(type) {
		case proto.Participant:
			if method == proto.MethodParticipantUpdated {
				log.Printf("%s's metadata is now %q", n.Identity, n.Metadata)
			}
		case proto.RoomUpdated:
			log.Printf("the room's metadata is now %q", n.Metadata)
		case proto.ProducerMuted:
			if n.ByServer {
				log.Printf("a moderator muted %s: unmuting is refused until it asks", n.ID)
			}
		case proto.UnmuteRequested:
			// Accept: unmute the producer (or ask the user first).
			go func() {
				err := c.Request(ctx, proto.MethodMute, proto.MuteData{Producer: n.Producer, Muted: false}, nil)
				if err != nil {
					log.Printf("unmute: %v", err)
				}
			}()
		}
	}
	c, err := client.Dial(ctx, "ws://127.0.0.1:7880/ws", client.Options{Token: "a token from your token server", OnNotification: onNotification})
	if err != nil {
		log.Print(err)
		return
	}
	defer c.Close()
	log.Printf("room %s, metadata %q; I am %s (%q)", c.Join.Room, c.Join.RoomMetadata, c.Join.Participant.Identity, c.Join.Participant.Metadata)
	<-c.Done()
	var closed *client.CloseError
	if errors.As(c.Err(), &closed) && closed.Final() {
		log.Printf("the session ended: %s", closed.Reason) // "removed", "room_deleted" or "replaced"
	}
}

func ExampleDecode() {
	n, err := client.Decode(proto.MethodProducerMuted, json.RawMessage(`{"id":"PR1","muted":true,"byServer":true}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	m := n.(proto.ProducerMuted)
	fmt.Println(m.ID, m.Muted, m.ByServer)
	// Output: PR1 true true
}
