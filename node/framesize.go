package node

// Frame sizes read from keyframes, so that a subscriber's preference by size (LayerPref
// MaxWidth/MaxHeight) can pick a simulcast layer: VP8's keyframe header (RFC 6386 9.1) and
// H264's sequence parameter set (ITU-T H.264 7.3.2.1.1). They run once per keyframe packet of
// a layered producer at ingest, never per consumer.

// vp8Size reads the size of a VP8 keyframe from its payload after the payload descriptor: a
// 3-byte frame tag (bit 0 clear on a keyframe), the start code 9d 01 2a, then the width and
// height in 14 bits each (little-endian, the top 2 bits are a scale).
func vp8Size(p []byte) (w, h int, ok bool) {
	if len(p) < 10 || p[0]&0x01 != 0 || p[3] != 0x9d || p[4] != 0x01 || p[5] != 0x2a {
		return 0, 0, false
	}
	w = int(uint16(p[6])|uint16(p[7])<<8) & 0x3fff
	h = int(uint16(p[8])|uint16(p[9])<<8) & 0x3fff
	return w, h, w > 0 && h > 0
}

// h264Size finds a sequence parameter set in an H264 payload (RFC 6184: a single NAL unit or
// a STAP-A) and reads the picture size from it.
func h264Size(b []byte) (w, h int, ok bool) {
	if len(b) < 1 {
		return 0, 0, false
	}
	switch t := b[0] & 0x1f; {
	case t == 7:
		return spsSize(b[1:])
	case t == 24:
		for i := 1; i+2 < len(b); {
			n := int(b[i])<<8 | int(b[i+1])
			if n == 0 || i+2+n > len(b) {
				return 0, 0, false
			}
			if b[i+2]&0x1f == 7 {
				return spsSize(b[i+3 : i+2+n])
			}
			i += 2 + n
		}
	}
	return 0, 0, false
}

// maxSPS bounds the SPS bytes read: sizes come before the VUI, well within it.
const maxSPS = 128

// spsSize reads the cropped picture size from an SPS (the bytes after its NAL header, with
// emulation prevention bytes still in).
func spsSize(b []byte) (w, h int, ok bool) {
	var raw [maxSPS]byte
	n, zeros := 0, 0
	for _, c := range b {
		if n == len(raw) {
			break
		}
		if zeros >= 2 && c == 3 { // emulation prevention: 00 00 03 -> 00 00
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		raw[n] = c
		n++
	}
	r := bitReader{b: raw[:n]}
	profile := r.bits(8)
	r.bits(16) // constraint flags, level
	r.ue()     // seq_parameter_set_id
	chroma := uint32(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			if r.bits(1) == 1 { // separate_colour_plane_flag: coded as monochrome planes
				chroma = 0
			}
		}
		r.ue()              // bit_depth_luma_minus8
		r.ue()              // bit_depth_chroma_minus8
		r.bits(1)           // qpprime_y_zero_transform_bypass_flag
		if r.bits(1) == 1 { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := 0; i < lists; i++ {
				if r.bits(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					r.scalingList(size)
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.bits(1) // delta_pic_order_always_zero_flag
		r.se()    // offset_for_non_ref_pic
		r.se()    // offset_for_top_to_bottom_field
		cycle := r.ue()
		if cycle > 255 {
			return 0, 0, false
		}
		for i := uint32(0); i < cycle; i++ {
			r.se()
		}
	}
	r.ue()    // max_num_ref_frames
	r.bits(1) // gaps_in_frame_num_value_allowed_flag
	mbW := int(r.ue()) + 1
	mapH := int(r.ue()) + 1
	frameMbsOnly := int(r.bits(1))
	if frameMbsOnly == 0 {
		r.bits(1) // mb_adaptive_frame_field_flag
	}
	r.bits(1) // direct_8x8_inference_flag
	w, h = mbW*16, (2-frameMbsOnly)*mapH*16
	if r.bits(1) == 1 { // frame_cropping_flag
		left, right, top, bottom := int(r.ue()), int(r.ue()), int(r.ue()), int(r.ue())
		cx, cy := 1, 2-frameMbsOnly
		switch chroma {
		case 1: // 4:2:0
			cx, cy = 2, 2*(2-frameMbsOnly)
		case 2: // 4:2:2
			cx = 2
		}
		w -= cx * (left + right)
		h -= cy * (top + bottom)
	}
	if r.bad || w <= 0 || h <= 0 || w > 16384 || h > 16384 {
		return 0, 0, false
	}
	return w, h, true
}

// bitReader reads the big-endian bit fields and exp-Golomb codes of an RBSP. Reading past the
// end sets bad and yields zeros.
type bitReader struct {
	b   []byte
	pos int // in bits
	bad bool
}

func (r *bitReader) bits(n int) uint32 {
	var v uint32
	for i := 0; i < n; i++ {
		if r.pos >= len(r.b)*8 {
			r.bad = true
			return 0
		}
		v = v<<1 | uint32(r.b[r.pos/8]>>(7-r.pos%8))&1
		r.pos++
	}
	return v
}

// ue reads an unsigned exp-Golomb code: n zeros, a one, then n bits.
func (r *bitReader) ue() uint32 {
	zeros := 0
	for r.bits(1) == 0 {
		if r.bad || zeros == 31 {
			r.bad = true
			return 0
		}
		zeros++
	}
	return 1<<zeros - 1 + r.bits(zeros)
}

// se reads a signed exp-Golomb code: 1, 2, 3, 4 ... map to 1, -1, 2, -2 ...
func (r *bitReader) se() int32 {
	k := r.ue()
	if k&1 == 1 {
		return int32(k/2) + 1
	}
	return -int32(k / 2)
}

// scalingList skips a scaling list of size entries (H.264 7.3.2.1.1.1).
func (r *bitReader) scalingList(size int) {
	last, next := int32(8), int32(8)
	for j := 0; j < size && !r.bad; j++ {
		if next != 0 {
			next = (last + r.se() + 256) % 256
		}
		if next != 0 {
			last = next
		}
	}
}
