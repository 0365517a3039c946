package uplink_test

import (
	"testing"

	"github.com/edgegate/edgegate/internal/gatewaychild"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	gatewaychild.RunIfChild() // this binary may be a crash test's gateway
	goleak.VerifyTestMain(m,
		// paho's client keeps a few goroutines a moment after Disconnect returns.
		goleak.IgnoreAnyFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch"),
	)
}
