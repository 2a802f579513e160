module github.com/pgbackups/pgbackups

go 1.26.8
