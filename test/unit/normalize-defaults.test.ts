// What the API server's defaulting makes of a Service before kube-proxy sees it (pkg/apis/core/v1
// defaults.go SetDefaults_Service): a manifest kubectl applies must compile the same standalone.
import test from 'ava';
import { normalizeService } from '../../src/model/normalize.js';
import type { ObjectError } from '../../src/model/types.js';

const svc = (port: Record<string, unknown>) => ({
  apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'ns' },
  spec: { clusterIP: '10.96.0.50', ports: [{ port: 80, ...port }] },
});

test('targetPort 0 or "" is defaulted to the port (SetDefaults_Service), not rejected', (t) => {
  for (const targetPort of [0, '']) {
    const errors: ObjectError[] = [];
    const m = normalizeService(svc({ targetPort }), 'ns/s', errors);
    t.deepEqual(errors, [], JSON.stringify(targetPort));
    t.is(m?.ports[0]?.targetPort, 80, JSON.stringify(targetPort));
  }
});

test('a targetPort out of range is still an error naming the field', (t) => {
  for (const targetPort of [-1, 65536, '0']) {
    const errors: ObjectError[] = [];
    normalizeService(svc({ targetPort }), 'ns/s', errors);
    t.true(errors.some((e) => /spec\.ports\[0\]\.targetPort/.test(JSON.stringify(e))), JSON.stringify(targetPort));
  }
});
