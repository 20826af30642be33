{{ lago_cdc.bronze_cdc('shop', 'order_lines') }}
