{{ lago_cdc.history_from_log('shop', 'order_lines') }}
