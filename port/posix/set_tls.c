/* The TLS context of a device's certificate set, from its key partition (posix_port.h). */
#include "posix_port.h"

void *otk_posix_set_tls(const otk_device *dev, int which, const char *cafile, const char *host)
{
    uint8_t der[OTK_CERT_MAX], priv[OTK_PRIV_LEN], pin[OTK_PIN_LEN];
    size_t len = 0;
    void *ctx = NULL;
    if (otk_device_cert(dev, which, der, sizeof der, &len) == OTK_OK &&
        otk_device_cert_key(dev, which, priv) == OTK_OK &&
        otk_device_ca_pin(dev, which, pin) == OTK_OK)
        ctx = otk_posix_cert_ctx(cafile, host, der, len, priv, pin);
    otk_wipe(priv, sizeof priv);
    return ctx;
}
