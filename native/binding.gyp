{
  # The addon is a thin layer over libbpf: one library call per method, no logic. Everything else
  # (validation, encoding, error messages) lives in src/dataplane/bpf/native.ts.
  "targets": [
    {
      "target_name": "kbp_native",
      "sources": ["src/addon.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      # C++20: v8.h (memoryPressure) requires it
      "cflags_cc": ["-fvisibility=hidden", "-std=c++20", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-pthread"],
      "ldflags": ["-pthread"],
      "libraries": ["<!@(pkg-config --libs libbpf 2>/dev/null || echo -lbpf)", "-lelf", "-lz"]
    },
    {
      # the nftables data plane's transport: libnftables (and libnetfilter_conntrack for UDP
      # conntrack cleanup) only, so it loads where libbpf is missing
      "target_name": "kbp_nft",
      "sources": ["src/nft.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-fvisibility=hidden", "-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["<!@(pkg-config --libs libnftables 2>/dev/null || echo -lnftables)",
        "<!@(pkg-config --libs libnetfilter_conntrack 2>/dev/null || echo -lnetfilter_conntrack -lnfnetlink)",
        "<!@(pkg-config --libs libmnl 2>/dev/null || echo -lmnl)"]
    },
    {
      # the Maglev table fill (src/plan/maglev-native.ts): plain C++ and threads, no library
      "target_name": "kbp_maglev",
      "sources": ["src/maglev.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread"],
      "cflags_cc": ["-fvisibility=hidden", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-pthread"],
      "ldflags": ["-pthread"]
    },
    {
      # the IPVS data plane's transport: raw netlink sockets (generic netlink), no library
      "target_name": "kbp_netlink",
      "sources": ["src/netlink.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-fvisibility=hidden", "-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
