/*
 * idf_nvs_secure example: read the values that the build put into NVS.
 *
 * The NVS image comes from nvs_values.yaml and products/<product>.yaml.  With
 * CONFIG_NVS_ENCRYPTION, nvs_flash_init() opens the default partition "nvs" encrypted,
 * with the keys of the configured scheme (the nvs_keys partition under flash
 * encryption, or keys derived from the HMAC eFuse key).  A value that is missing is
 * logged with the reason and the app carries on with a default.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "esp_err.h"
#include "esp_idf_version.h"
#include "esp_log.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

static const char *TAG = "nvs_secure_example";

/* Log why a value could not be read; true when it was. */
static bool got(esp_err_t err, const char *ns, const char *key)
{
    if (err == ESP_OK) {
        return true;
    }
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        ESP_LOGW(TAG, "%s.%s: not in NVS, using the default", ns, key);
    } else {
        ESP_LOGE(TAG, "%s.%s: %s, using the default", ns, key, esp_err_to_name(err));
    }
    return false;
}

static void log_string(nvs_handle_t h, const char *ns, const char *key, bool secret)
{
    size_t len = 0;
    esp_err_t err = nvs_get_str(h, key, NULL, &len);
    char *value = err == ESP_OK ? malloc(len) : NULL;
    if (err == ESP_OK && value == NULL) {
        err = ESP_ERR_NO_MEM;
    }
    if (err == ESP_OK) {
        err = nvs_get_str(h, key, value, &len);
    }
    if (got(err, ns, key)) {
        if (secret) {
            ESP_LOGI(TAG, "%s.%s = (secret, %u characters)", ns, key, (unsigned)(len - 1));
        } else {
            ESP_LOGI(TAG, "%s.%s = \"%s\"", ns, key, value);
        }
    }
    free(value);
}

static void log_blob(nvs_handle_t h, const char *ns, const char *key, bool secret)
{
    uint8_t head[8];
    size_t len = 0;
    esp_err_t err = nvs_get_blob(h, key, NULL, &len);
    if (got(err, ns, key)) {
        size_t n = len < sizeof(head) ? len : sizeof(head);
        uint8_t *data = malloc(len);
        if (data != NULL && nvs_get_blob(h, key, data, &len) == ESP_OK) {
            for (size_t i = 0; i < n; i++) {
                head[i] = data[i];
            }
            if (secret) {
                ESP_LOGI(TAG, "%s.%s = (secret blob, %u bytes)", ns, key, (unsigned)len);
            } else {
                ESP_LOGI(TAG, "%s.%s = blob of %u bytes, starting:", ns, key, (unsigned)len);
                ESP_LOG_BUFFER_HEX(TAG, head, n);
            }
        }
        free(data);
    }
}

static bool open_namespace(const char *ns, nvs_handle_t *h)
{
    esp_err_t err = nvs_open(ns, NVS_READONLY, h);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        ESP_LOGW(TAG, "namespace %s: not in NVS (not provisioned for this product)", ns);
        return false;
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "namespace %s: %s", ns, esp_err_to_name(err));
        return false;
    }
    return true;
}

static void read_device(void)
{
    nvs_handle_t h;
    if (!open_namespace("device", &h)) {
        return;
    }
    uint8_t hw_rev = 0, feature_level = 0;
    uint16_t boot_limit = 100;
    int32_t calib_offset = 0;
    uint64_t serial_base = 0;
    uint32_t temp_milli = 1000;

    log_string(h, "device", "model", false);
    log_string(h, "device", "serial", false);  /* per device: from devices.csv (batch) */
    if (got(nvs_get_u8(h, "hw_rev", &hw_rev), "device", "hw_rev")) {
        ESP_LOGI(TAG, "device.hw_rev = %u", hw_rev);
    }
    if (got(nvs_get_u16(h, "boot_limit", &boot_limit), "device", "boot_limit")) {
        ESP_LOGI(TAG, "device.boot_limit = %u", boot_limit);
    }
    if (got(nvs_get_i32(h, "calib_offset", &calib_offset), "device", "calib_offset")) {
        ESP_LOGI(TAG, "device.calib_offset = %" PRIi32, calib_offset);
    }
    if (got(nvs_get_u64(h, "serial_base", &serial_base), "device", "serial_base")) {
        ESP_LOGI(TAG, "device.serial_base = 0x%016" PRIx64, serial_base);
    }
    if (got(nvs_get_u32(h, "temp_milli", &temp_milli), "device", "temp_milli")) {
        ESP_LOGI(TAG, "device.temp_milli = %" PRIu32, temp_milli);
    }
#if ESP_IDF_VERSION >= ESP_IDF_VERSION_VAL(6, 1, 0)
    /* float and double NVS types exist from ESP-IDF v6.1 on (nvs_get_float is not
     * declared before; an older firmware cannot read such an entry).  idf_nvs_secure
     * refuses float values when the firmware's ESP-IDF is older, so a value file that
     * adds one here needs v6.1+. */
    float temp_scale = 1.0f;
    if (got(nvs_get_float(h, "temp_scale", &temp_scale), "device", "temp_scale")) {
        ESP_LOGI(TAG, "device.temp_scale = %.3f", (double)temp_scale);
    }
#endif
    log_blob(h, "device", "cert", false);
    if (got(nvs_get_u8(h, "feature_level", &feature_level), "device", "feature_level")) {
        ESP_LOGI(TAG, "device.feature_level = %u", feature_level);
    }
    nvs_close(h);
}

static void read_wifi(void)
{
    nvs_handle_t h;
    if (!open_namespace("wifi", &h)) {
        return;
    }
    log_string(h, "wifi", "ssid", false);
    log_string(h, "wifi", "pass", true);
    nvs_close(h);
}

static void read_cloud(void)
{
    nvs_handle_t h;
    if (!open_namespace("cloud", &h)) {  /* the pro product only */
        return;
    }
    log_string(h, "cloud", "endpoint", false);
    log_blob(h, "cloud", "token", true);
    nvs_close(h);
}

static void read_values(void)
{
#if CONFIG_NVS_ENCRYPTION
    ESP_LOGI(TAG, "NVS encryption on: nvs_flash_init() opens \"nvs\" with the configured keys");
#else
    ESP_LOGI(TAG, "NVS encryption off: \"nvs\" is plain text");
#endif
    /* No erase-and-retry here: the partition holds provisioned data, and erasing it
     * would lose that.  A failure is reported and the app runs on defaults. */
    esp_err_t err = nvs_flash_init();
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "nvs_flash_init: %s; running on defaults (re-flash the NVS image "
                 "with `idf.py nvs-flash`)", esp_err_to_name(err));
        return;
    }
    read_device();
    read_wifi();
    read_cloud();
    ESP_LOGI(TAG, "done");
}

void app_main(void)
{
    read_values();
#if CONFIG_IDF_TARGET_LINUX
    exit(0);  /* on the host there is no device to keep running: end the process */
#endif
}
