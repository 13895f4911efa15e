# Event stream configuration errors stop apache2 -t, naming the directive
# and the problem; a complete configuration is accepted without warnings.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Apache::TestUtil;
use BFFConfTest qw(configtest refused accepted);

plan tests => 13;

my $R = 'redis://127.0.0.1:6379';

refused("BFFEventStreamRedis http://127.0.0.1:6379", qr/BFFEventStreamRedis: /,
        'not a Redis URL');
refused("BFFEventStreamRedis $R max-streams=0", qr/BFFEventStreamRedis: max-streams/,
        'max-streams below 1');
refused("BFFEventStreamRedis $R prefix=a/b", qr/BFFEventStreamRedis: prefix/,
        'a prefix with a slash');
refused("BFFEventStreamRedis $R nosuch=1", qr/BFFEventStreamRedis: /, 'an unknown option');
refused("BFFEventStreamRedis $R\nBFFEventStreamRedis $R", qr/given twice/, 'given twice');
refused("Listen 127.0.0.1:2\n<VirtualHost 127.0.0.1:2>\nBFFEventStreamRedis $R\n</VirtualHost>",
        qr/BFFEventStreamRedis cannot occur within <VirtualHost> section/, 'main server only');
refused("<Location /e>\nBFFEventStream topic=a/b\n</Location>", qr/BFFEventStream: topic/,
        'a topic with a slash');
refused("<Location /e>\nBFFEventStream heartbeat=10ms\n</Location>", qr/BFFEventStream: heartbeat/,
        'a heartbeat below 100ms');
refused("<Location /e>\nBFFEventStream per-identity=0\n</Location>", qr/BFFEventStream: per-identity/,
        'per-identity below 1');
refused("<Location /e>\nBFFEventStream\n</Location>", qr/BFFEventStream takes options/,
        'no option');
refused("<BFFEndpoint GET /x>\nBFFEventStream heartbeat=1s\n</BFFEndpoint>",
        qr/BFFEventStream is not allowed inside <BFFEndpoint>/, 'not inside <BFFEndpoint>');
accepted(<<"EOF", undef, 'a complete configuration');
BFFEventStreamRedis $R prefix=shop: max-streams=100 retry-after=2s connect-timeout=100ms timeout=300ms pool=8
<Location /events>
    SetHandler bff-event-stream
    BFFEventStream heartbeat=20s per-identity=3
</Location>
<Location /news>
    SetHandler bff-event-stream
    BFFEventStream topic=news.eu
</Location>
EOF
