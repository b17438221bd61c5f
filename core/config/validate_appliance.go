package config

import (
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// hostnameMax is HOST_NAME_MAX, what sethostname(2) accepts.
const hostnameMax = 64

// ifName is what Linux accepts as an interface name (at most 15 bytes,
// no '/', ':' or white space), narrowed to the usual characters.
var ifName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

func (v *validator) appliance() {
	a := v.c.Appliance
	if a.Hostname != "" && (len(a.Hostname) > hostnameMax || !validHostname(a.Hostname)) {
		v.addf("appliance.hostname", ErrInvalid, "%q is not a host name of at most %d bytes", a.Hostname, hostnameMax)
	}
	for i, s := range a.NTPServers {
		if _, err := netip.ParseAddr(s); err != nil && !validHostname(s) {
			v.addf(indexKey("appliance.ntp_servers", i), ErrInvalid, "%q is neither an IP address nor a host name", s)
		}
	}
	if a.Watchdog != "" && (!filepath.IsAbs(a.Watchdog) || filepath.Clean(a.Watchdog) != a.Watchdog || !strings.HasPrefix(a.Watchdog, "/dev/")) {
		v.addf("appliance.watchdog", ErrInvalid, "%q is not a device path under /dev/", a.Watchdog)
	}
}

// maxResolvers bounds network.dns: resolv.conf's readers take the first
// three; a few more are kept for whoever reads all, not a file of any size.
const maxResolvers = 8

func (v *validator) network() {
	n := v.c.Network
	if len(n.DNS) > maxResolvers {
		v.addf("network.dns", ErrInvalid, "%d resolvers, at most %d", len(n.DNS), maxResolvers)
	}
	for i, s := range n.DNS {
		if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
			v.addf(indexKey("network.dns", i), ErrInvalid, "%q is not an IP address", s)
		}
	}
	names := make([]string, 0, len(n.Interfaces))
	for name := range n.Interfaces {
		names = append(names, name)
	}
	slices.Sort(names)
	owner := map[netip.Addr]string{} // address → the key that set it first
	vlans := map[string]string{}     // "parent/id" → interface
	for _, name := range names {
		path := joinKey("network.interfaces", name)
		ifc := n.Interfaces[name]
		if !ifName.MatchString(name) {
			v.addf(path, ErrInvalid, "interface name %q must be 1 to 15 of [A-Za-z0-9_.-], starting with a letter or digit", name)
		}
		for i, s := range ifc.Addresses {
			key := indexKey(path+".addresses", i)
			p, err := netip.ParsePrefix(s)
			if err != nil {
				v.addf(key, ErrInvalid, "%q is not an address in CIDR form such as 192.0.2.10/24", s)
				continue
			}
			if a := p.Addr(); a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
				// The kernel takes some of them, and the box then answers
				// for, or routes, what no one meant it to.
				v.addf(key, ErrInvalid, "%s is not a unicast address an interface can have (unspecified, multicast or loopback)", a)
				continue
			}
			if prev, ok := owner[p.Addr()]; ok {
				v.addf(key, ErrConflict, "%s is also set by %s", p.Addr(), prev)
				continue
			}
			owner[p.Addr()] = key
		}
		for i, r := range ifc.Routes {
			v.route(indexKey(path+".routes", i), r)
		}
		if ifc.MTU != 0 {
			v.intRange(path+".mtu", ifc.MTU, 68, 65535)
		}
		switch {
		case ifc.Parent == "" && ifc.VLAN != 0:
			v.addf(path+".vlan", ErrInvalid, "a VLAN needs parent, the interface it is tagged on")
		case ifc.Parent != "":
			parent, known := n.Interfaces[ifc.Parent]
			switch {
			case !ifName.MatchString(ifc.Parent) || ifc.Parent == name:
				v.addf(path+".parent", ErrInvalid, "%q is not another interface's name", ifc.Parent)
			case !known:
				// The init brings up only the interfaces the config
				// names; a VLAN on a parent left down carries nothing.
				v.addf(path+".parent", ErrInvalid, "%q is not in network.interfaces; add [%s] (it may be empty) so it is brought up",
					ifc.Parent, joinKey("network.interfaces", ifc.Parent))
			case parent.Parent != "":
				v.addf(path+".parent", ErrInvalid, "%s is itself a VLAN; VLANs in VLANs (802.1ad, QinQ) are not supported", joinKey("network.interfaces", ifc.Parent))
			}
			if ifc.VLAN == 0 {
				v.add(path+".vlan", ErrRequired)
				break
			}
			if !v.intRange(path+".vlan", ifc.VLAN, 1, 4094) {
				break
			}
			id := ifc.Parent + "/" + strconv.Itoa(ifc.VLAN)
			if prev, ok := vlans[id]; ok {
				v.addf(path+".vlan", ErrConflict, "VLAN %d on %s is also %s", ifc.VLAN, ifc.Parent, joinKey("network.interfaces", prev))
			}
			vlans[id] = name
		}
	}
}

func (v *validator) route(path string, r Route) {
	to, err := netip.ParsePrefix(r.To)
	switch {
	case r.To == "":
		v.add(path+".to", ErrRequired)
		return
	case err != nil:
		v.addf(path+".to", ErrInvalid, "%q is not a prefix such as 198.51.100.0/24 or 0.0.0.0/0", r.To)
		return
	case to.Masked() != to:
		v.addf(path+".to", ErrInvalid, "%s has host bits set; the prefix is %s", r.To, to.Masked())
	}
	if r.Via == "" {
		return
	}
	via, err := netip.ParseAddr(r.Via)
	switch {
	case err != nil || via.Zone() != "":
		v.addf(path+".via", ErrInvalid, "%q is not an IP address", r.Via)
	case via.Is4() != to.Addr().Is4():
		v.addf(path+".via", ErrConflict, "gateway %s is not of the family of %s", r.Via, r.To)
	}
}
