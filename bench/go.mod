module github.com/sluicehq/sluice/bench

go 1.26.0
