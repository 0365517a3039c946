package uplink_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(childEnv); cfg != "" {
		os.Exit(runChild(cfg)) // this binary is a crash test's gateway
	}
	goleak.VerifyTestMain(m,
		// paho's client keeps a few goroutines a moment after Disconnect returns.
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch"),
	)
}
