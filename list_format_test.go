package main

import (
	"testing"
	"time"
)

func TestRoundDuration(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{159 * time.Millisecond, 200 * time.Millisecond},
		{40 * time.Millisecond, 0},
		{1400 * time.Millisecond, time.Second},
		{95 * time.Second, 95 * time.Second},
	} {
		if got := roundDuration(tc.in); got != tc.want {
			t.Errorf("roundDuration(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
