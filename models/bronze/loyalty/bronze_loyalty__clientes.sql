{{ lago_cdc.bronze_cdc('loyalty', 'clientes') }}
