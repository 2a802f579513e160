package main

import (
	"fmt"
	"time"

	"github.com/pgbackups/pgbackups/schedule"
)

func main() {
	for _, spec := range []string{"02:30 America/Los_Angeles", "01:30 PDT", "CRON_TZ=America/Los_Angeles 0 * * * *", "CRON_TZ=America/Los_Angeles */15 * * * *", "02:30 Europe/Berlin", "0 0 29 2 *", "@every 90m", "*/5 * * * * *", "02:00,14:00 Europe/Berlin", "0 0 31 * *"} {
		s, err := schedule.Parse(spec)
		if err != nil { fmt.Println(err); continue }
		fmt.Println(s, s.Interval())
		for _, t := range s.NextN(time.Date(2026, 3, 7, 23, 0, 0, 0, time.UTC), 4) { fmt.Println("  ", t.Format(time.RFC3339+" MST")) }
		for _, t := range s.NextN(time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC), 4) { fmt.Println("  ", t.Format(time.RFC3339+" MST")) }
	}
	for _, spec := range []string{"02:00 XYZ", "02:00 CST6", "25:00", "2:60 UTC", "02:00,2:00", "02:00,,03:00", "0 25 * * *", "0 0 30 2 *", "CRON_TZ= 0 * * * *", "hello", "AST"} {
		_, err := schedule.Parse(spec); fmt.Println(err)
	}
}
