//go:build race

package s3_test

// raceEnabled: the race detector changes allocation (sync.Pool drops items
// at random), so allocation tests skip under it.
const raceEnabled = true
