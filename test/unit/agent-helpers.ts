// Manifests the agent unit tests share.

/** Service web (10.96.0.10:80 -> 8080/TCP) and its slice web-1 with these ready endpoints on node n1. */
export const webYaml = (ips: string[]): string => `
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  clusterIP: 10.96.0.10
  ports: [{ name: http, port: 80, targetPort: 8080, protocol: TCP }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, namespace: default, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints:
${ips.map((a) => `  - { addresses: [${a}], conditions: { ready: true }, nodeName: n1 }`).join('\n')}
`;
