package proto

// Media adaptation (PROTOCOL.md, "Simulcast, bandwidth and speakers"): simulcast layers, a
// subscriber's preferred layer, the layers a publisher is asked to send (dynacast), the layer
// a subscriber receives, and the room's active speakers.

// Requests.
const (
	// MethodSetPreferredLayer sets the largest layer a subscriber wants of one producer
	// (PreferredLayerData); the server never sends more, and less when its estimate of the
	// subscriber's bandwidth does not fit it.
	MethodSetPreferredLayer = "setPreferredLayer"
)

// Notifications.
const (
	// MethodLayersWanted tells a publisher which layers of one of its simulcast producers some
	// subscriber on some node needs (LayersWantedData): the client stops encoding the others
	// (dynacast) and resumes them when asked.
	MethodLayersWanted = "layersWanted"
	// MethodLayerChanged tells a subscriber which layer of a producer it now receives
	// (LayerChangedData), after each switch.
	MethodLayerChanged = "layerChanged"
	// MethodActiveSpeakers lists the room's loudest participants, loudest first, when the list
	// changes (ActiveSpeakersData).
	MethodActiveSpeakers = "activeSpeakers"
)

// MaxLayers is how many simulcast layers a producer may have.
const MaxLayers = 3

// Layer is one simulcast layer of a producer, in Producer.Layers, lowest quality first: its
// index in that list is the layer number used everywhere else. Width and Height are those of its
// last keyframe (0 until one is seen, and for codecs whose size the server does not read);
// Bitrate is its measured rate in bit/s; Active: packets arrived in the last second.
type Layer struct {
	Rid     string `json:"rid"`
	Width   int    `json:"width,omitempty"`
	Height  int    `json:"height,omitempty"`
	Bitrate int    `json:"bitrate,omitempty"`
	Active  bool   `json:"active"`
}

// PreferredLayerData is the data of setPreferredLayer. Either Layer (the layer number; -1 or
// absent: no limit by number) or MaxWidth/MaxHeight (the largest size the view shows; 0: no
// limit) or both: the server picks the highest layer that satisfies every limit given (the
// lowest layer when none does). Sent for a producer not subscribed yet, it applies from its
// subscription on.
type PreferredLayerData struct {
	Producer  string `json:"producer"`
	Layer     *int   `json:"layer,omitempty"`
	MaxWidth  int    `json:"maxWidth,omitempty"`
	MaxHeight int    `json:"maxHeight,omitempty"`
}

// LayersWantedData is the data of layersWanted: for each rid of the producer, whether to send it.
type LayersWantedData struct {
	Producer string          `json:"producer"`
	Layers   map[string]bool `json:"layers"`
}

// LayerChangedData is the data of layerChanged.
type LayerChangedData struct {
	Producer string `json:"producer"`
	Layer    int    `json:"layer"`
	Rid      string `json:"rid"`
}

// Speaker is one entry of activeSpeakers: a participant, the audio producer it speaks through,
// and its level (0 silent .. 1 loudest, from the RFC 6464 audio level).
type Speaker struct {
	Participant string  `json:"participant"`
	Producer    string  `json:"producer"`
	Level       float64 `json:"level"`
}

// ActiveSpeakersData is the data of activeSpeakers: the loudest participants, loudest first
// (empty: nobody speaks).
type ActiveSpeakersData struct {
	Speakers []Speaker `json:"speakers"`
}
