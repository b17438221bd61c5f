package main

import (
	"reflect"
	"testing"

	"github.com/umedge/umedge/core/config"
	"github.com/umedge/umedge/core/sdk/base"
)

func TestRestartOnly(t *testing.T) {
	fresh := func() *config.Config {
		c := config.Default()
		c.Plugins = map[string]config.Plugin{"umrouter": {Kind: base.KindRouter, Binary: "umedge-plugin-umrouter"}}
		return &c
	}
	tests := []struct {
		name string
		give func(c *config.Config)
		want []string
	}{
		{"nothing", func(*config.Config) {}, nil},
		{"live changes only", func(c *config.Config) { c.Log.Level = "debug"; c.SIP.TCPPort = 5070; c.SIP.DSCP = 46 }, nil},
		{"plugin dir", func(c *config.Config) { c.PluginHost.Dir = "/opt/plugins" }, []string{"plugin_host"}},
		{"log format", func(c *config.Config) { c.Log.Format = "json" }, []string{"log.format"}},
		{"router renamed", func(c *config.Config) {
			c.Plugins = map[string]config.Plugin{"router2": c.Plugins["umrouter"]}
		}, []string{"the router plugin's instance name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fresh()
			tt.give(c)
			if got := restartOnly(fresh(), c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("restartOnly() = %v, want %v", got, tt.want)
			}
		})
	}
}

// sip.dscp reaches the front end, whose sockets it marks (the default
// CS3 too: sipfront's own zero is unmarked).
func TestFrontConfigDSCP(t *testing.T) {
	for _, dscp := range []int{24, 46, 0} {
		c := config.Default()
		c.SIP.Mode = config.ModeTCP
		c.SIP.DSCP = dscp
		fc, err := frontConfig(&c)
		if err != nil {
			t.Fatal(err)
		}
		if fc.DSCP != dscp {
			t.Errorf("sip.dscp %d: front end's DSCP %d", dscp, fc.DSCP)
		}
	}
	if d := config.Default().SIP.DSCP; d != 24 {
		t.Errorf("default sip.dscp %d, want 24 (CS3)", d)
	}
}
