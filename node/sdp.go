package node

import (
	"fmt"

	"github.com/pion/sdp/v3"
)

// sendingMedia parses an SDP offer and counts its audio and video sections that send media.
func sendingMedia(s string) (int, error) {
	n, _, err := offered(s)
	return n, err
}

// offered parses an SDP offer: it counts its audio and video sections that send media, and
// tells whether it has a data (application) section.
func offered(s string) (sending int, data bool, err error) {
	if err := checkSDP(s); err != nil {
		return 0, false, err
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return 0, false, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	n := 0
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media == "application" && m.MediaName.Port.Value != 0 {
			data = true
		}
		if m.MediaName.Media != "audio" && m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		_, recvonly := m.Attribute("recvonly")
		_, inactive := m.Attribute("inactive")
		if !recvonly && !inactive {
			n++
		}
	}
	return n, data, nil
}

// answerAsOffer flips the directions of an answer so that sendingMedia counts what it accepts.
func answerAsOffer(s string) string {
	var d sdp.SessionDescription
	if d.UnmarshalString(s) != nil {
		return s
	}
	for _, m := range d.MediaDescriptions {
		for i, a := range m.Attributes {
			if a.Key == "recvonly" {
				m.Attributes[i].Key = "sendonly"
			}
		}
	}
	out, err := d.Marshal()
	if err != nil {
		return s
	}
	return string(out)
}

func checkSDP(s string) error {
	if len(s) == 0 {
		return fmt.Errorf("%w: empty", ErrBadSDP)
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	return nil
}
