package config

import (
	"fmt"
	"github.com/pgbackups/pgbackups/storage"
	"math"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count read from values like "64MiB", "20GB", "1.5GiB" or
// "1048576". Binary (KiB, MiB, GiB, TiB) and decimal (kB, MB, GB, TB) units
// mean what they say; a bare number is bytes.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first so "MiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"ki", 1 << 10}, {"mi", 1 << 20}, {"gi", 1 << 30}, {"ti", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"t", 1e12},
	{"b", 1},
}

// ParseSize parses a human size. It rejects negative values and garbage.
func ParseSize(s string) (Size, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, fmt.Errorf("%q is not a size (try 64MiB, 20GB or a byte count)", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("%q: size cannot be negative", s)
	}
	b := n * mult
	if b > math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(b), nil
}

// Decode implements envconfig.Decoder.
func (s *Size) Decode(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = n
	return nil
}

// String renders the size with the largest binary unit that divides it.
func (s Size) String() string {
	n := int64(s)
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}

// HumanBytes renders n for people: 1.5 GiB, 320 MiB, 12 KiB, 512 B.
func HumanBytes(n int64) string { return storage.HumanBytes(n) }

// Rate is PGBACKUPS_MAX_RATE: bytes per second of uncompressed dump, 0 for
// unlimited, or Auto for the adaptive mode that watches the database.
type Rate struct {
	BytesPerSecond int64
	Auto           bool
}

// Decode implements envconfig.Decoder.
func (r *Rate) Decode(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "off", "none", "unlimited":
		*r = Rate{}
		return nil
	case "auto":
		*r = Rate{Auto: true}
		return nil
	}
	s := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(v), "/s"), "ps")
	n, err := ParseSize(s)
	if err != nil {
		return fmt.Errorf("%q is not a rate (try 40MiB, auto or off)", v)
	}
	if n > 0 && n < 64<<10 {
		return fmt.Errorf("%q is below the 64KiB/s floor; a dump that slow holds its snapshot for days", v)
	}
	*r = Rate{BytesPerSecond: int64(n)}
	return nil
}

func (r Rate) String() string {
	switch {
	case r.Auto:
		return "auto"
	case r.BytesPerSecond == 0:
		return "off"
	}
	return Size(r.BytesPerSecond).String() + "/s"
}

// Duration accepts Go durations ("30s", "1h30m") and plain seconds ("30").
type Duration time.Duration

// Decode implements envconfig.Decoder.
func (d *Duration) Decode(v string) error {
	v = strings.TrimSpace(v)
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return fmt.Errorf("%q: duration cannot be negative", v)
		}
		if int64(n) > math.MaxInt64/int64(time.Second) {
			return fmt.Errorf("%q seconds is too long (at most %d, about 292 years)", v, math.MaxInt64/int64(time.Second))
		}
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	}
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration (try 30s, 5m or 1h)", v)
	}
	if x < 0 {
		return fmt.Errorf("%q: duration cannot be negative", v)
	}
	*d = Duration(x)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }
