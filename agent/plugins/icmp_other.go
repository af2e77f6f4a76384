//go:build !linux

package plugins

import (
	"context"
	"errors"
	"time"
)

func echo(context.Context, []byte, int, time.Duration) ([]time.Duration, string, error) {
	return nil, "", errors.New("ping_monitor needs Linux")
}
